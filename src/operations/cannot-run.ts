/** Why an operations command (doctor, repair) cannot run, worded for the operator: exit code 2. */
export class CannotRunError extends Error {
  override name = 'CannotRunError';
}
