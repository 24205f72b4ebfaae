import * as z from 'zod';
import { PROJECT_ID_MAX_LENGTH, PROJECT_ID_PATTERN, PROJECT_ID_RULES } from '../src/workspaces/project-id.js';

/** The id rules are in the JSON Schema too, so a model sees them before it calls. */
export const projectId = z
  .string()
  .max(PROJECT_ID_MAX_LENGTH, PROJECT_ID_RULES)
  .regex(PROJECT_ID_PATTERN, PROJECT_ID_RULES)
  .describe(`Project identifier. ${PROJECT_ID_RULES}`);

export const isoTimestamp = z.string().describe('ISO 8601 timestamp (UTC)');
