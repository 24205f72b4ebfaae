import { describe, expect, it } from 'vitest';
import { ConfigError, parseCommand } from '../src/config.js';

const http = (argv: string[], env: Record<string, string> = {}) => {
  const command = parseCommand(argv, env);
  if (command.kind !== 'serve') throw new Error('expected serve');
  return command.http;
};

describe('--http configuration', () => {
  it('is off by default (stdio) and defaults to loopback with its own host names allowed', () => {
    expect(http([])).toBeUndefined();
    expect(http(['--http', '8080'])).toEqual({ host: '127.0.0.1', port: 8080, token: undefined, allowedHosts: ['localhost', '127.0.0.1', '[::1]'] });
    expect(http([], { PG_WORKSPACE_HTTP: '[::1]:9000' })).toMatchObject({ host: '::1', port: 9000 });
  });

  it('needs a token of 16+ characters beyond loopback, and then checks that host', () => {
    expect(() => http(['--http', '0.0.0.0:8080'])).toThrow(/PG_WORKSPACE_HTTP_TOKEN/);
    expect(() => http(['--http', '127.0.0.1:8080'], { PG_WORKSPACE_HTTP_TOKEN: 'short' })).toThrow(/at least 16/);
    const token = 'x'.repeat(32);
    expect(http(['--http', '0.0.0.0:8080'], { PG_WORKSPACE_HTTP_TOKEN: token })).toMatchObject({ token, allowedHosts: [] });
    expect(http(['--http', '10.0.0.5:8080'], { PG_WORKSPACE_HTTP_TOKEN: token, PG_WORKSPACE_HTTP_ALLOWED_HOSTS: 'mcp.example' })).toMatchObject({
      allowedHosts: ['10.0.0.5', 'mcp.example'],
    });
  });

  it('rejects a malformed address with the expected form', () => {
    for (const bad of ['', 'host', '70000', 'a:b:8080', '127.0.0.1:']) {
      expect(() => http(['--http', bad]), bad).toThrow(ConfigError);
      expect(() => http(['--http', bad]), bad).toThrow(/\[HOST:\]PORT/);
    }
  });
});
