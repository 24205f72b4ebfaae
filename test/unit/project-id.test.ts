import { describe, expect, it } from 'vitest';
import {
  PROJECT_ID_MAX_LENGTH,
  ReservedProjectIdError,
  projectIdOfSchema,
  ReservedSchemas,
  schemaNameFor,
  validateProjectId,
  WorkspaceIdError,
} from '../../src/workspaces/project-id.js';

const RULES = 'A project id is 1-55 characters of lower-case ASCII letters and digits, starting with a letter, with single hyphens between words';

describe('project ids', () => {
  it('accepts lower-case words joined by single hyphens, up to the length that keeps the schema name within 63 bytes', () => {
    for (const id of ['a', 'client-a', 'frontend-app-2', 'x1-2-3', 'a'.repeat(PROJECT_ID_MAX_LENGTH)]) expect(validateProjectId(id)).toBe(id);
    expect(Buffer.byteLength(schemaNameFor('a'.repeat(PROJECT_ID_MAX_LENGTH)))).toBe(63);
  });

  it('refuses anything else with the rules and the id as given', () => {
    for (const id of ['', 'Client-A', '1abc', '-a', 'a-', 'a--b', 'a_b', 'a b', 'é', 'a\u0000']) {
      expect(() => validateProjectId(id), JSON.stringify(id)).toThrow(WorkspaceIdError);
      expect(() => validateProjectId(id), JSON.stringify(id)).toThrow(`Invalid project id ${JSON.stringify(id)}. ${RULES}`);
    }
    expect(() => validateProjectId(42)).toThrow(`The project id must be a string. ${RULES}`);
  });

  it('says when an id is too long, showing only its start', () => {
    expect(() => validateProjectId('a'.repeat(56))).toThrow(`Invalid project id "${'a'.repeat(56)}": longer than 55 characters. ${RULES}`);
    expect(() => validateProjectId('b'.repeat(1000))).toThrow(`Invalid project id "${'b'.repeat(80)}"… (1000 characters): longer than 55 characters.`);
  });

  it('maps an id to its schema one-to-one', () => {
    expect(schemaNameFor('client-a')).toBe('project_client_a');
    expect(schemaNameFor('client-a-2')).not.toBe(schemaNameFor('client-a2'));
    expect(() => schemaNameFor('client_a')).toThrow(WorkspaceIdError);
  });

  it('maps a workspace schema back to its id, and other names to none', () => {
    for (const id of ['client-a', 'a', 'x1-2-3', 'a'.repeat(PROJECT_ID_MAX_LENGTH)]) expect(projectIdOfSchema(schemaNameFor(id))).toBe(id);
    for (const name of ['project_', 'project__a', 'project_a_', 'project_Client', 'project_1a', 'public', 'projecta', `project_${'a'.repeat(56)}`]) {
      expect(projectIdOfSchema(name), name).toBeUndefined();
    }
  });
});

describe('ReservedSchemas', () => {
  it('reserves registry and registry-* for the server for good', () => {
    const reserved = new ReservedSchemas();
    for (const id of ['registry', 'registry-v2', 'registry-x-y']) {
      expect(() => reserved.schemaFor(id), id).toThrow(ReservedProjectIdError);
      expect(() => reserved.schemaFor(id), id).toThrow(
        `The project id "${id}" is reserved: its schema ${schemaNameFor(id)} is the server's own (its workspace registry and bookkeeping). Choose another id.`,
      );
    }
    expect(reserved.schemaFor('registryx')).toBe('project_registryx');
    expect(reserved.schemaFor('my-registry')).toBe('project_my_registry');
  });

  it('reserves the workspace-like schemas extensions use, naming the first user', () => {
    const reserved = new ReservedSchemas();
    reserved.add('project_lookup', 'used by the global SQL of extension "notes"');
    reserved.add('project_lookup', 'used by something later');
    reserved.add('lookup', 'not named like a workspace: ignored');
    expect(() => reserved.schemaFor('lookup')).toThrow(
      'The project id "lookup" is reserved: its schema project_lookup is used by the global SQL of extension "notes". Choose another id. Reserved ids:',
    );
    expect(reserved.schemaFor('lookup-2')).toBe('project_lookup_2');
  });

  it('still validates the id first', () => {
    expect(() => new ReservedSchemas().schemaFor('Registry')).toThrow('Invalid project id "Registry".');
  });
});
