import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HttpSessions, type Activity } from '../../src/mcp/http-sessions.js';
import { silentLogger } from '../../src/logger.js';

/** The bookkeeping of HTTP sessions, without HTTP: the cap, eviction order, busy sessions, expiry. */

function session() {
  const server = new McpServer({ name: 'test', version: '0' });
  const close = vi.spyOn(server, 'close');
  return { server, transport: new StreamableHTTPServerTransport({ sessionIdGenerator: () => 'unused' }), close };
}

function response(): ServerResponse {
  return new ServerResponse(new IncomingMessage(new Socket()));
}

let sessions: HttpSessions | undefined;
afterEach(async () => {
  await sessions?.closeAll();
  vi.useRealTimers();
});

describe('HttpSessions', () => {
  it('at the cap, evicts the least recently active idle session and keeps the others', () => {
    vi.useFakeTimers();
    sessions = new HttpSessions({ idleTimeoutMs: 60_000, maxSessions: 2 }, silentLogger);
    const a = session();
    const b = session();
    const placeA = sessions.open() as Activity;
    sessions.register(placeA, 'a', a);
    vi.advanceTimersByTime(10);
    const placeB = sessions.open() as Activity;
    sessions.register(placeB, 'b', b);
    vi.advanceTimersByTime(10);
    // a was active after b: b is now the least recently active.
    const res = response();
    sessions.track(placeA, res);
    res.emit('close');

    const placeC = sessions.open();
    expect(placeC).toBeDefined();
    expect(sessions.get('b')).toBeUndefined();
    expect(sessions.get('a')).toBeDefined();
    expect(b.close).toHaveBeenCalledOnce();
    expect(a.close).not.toHaveBeenCalled();
  });

  it('never evicts a busy session: with every session busy, a new one gets no place', () => {
    sessions = new HttpSessions({ idleTimeoutMs: 60_000, maxSessions: 1 }, silentLogger);
    const a = session();
    const place = sessions.open() as Activity;
    sessions.register(place, 'a', a);
    const res = response();
    sessions.track(place, res);

    expect(sessions.open()).toBeUndefined();
    expect(a.close).not.toHaveBeenCalled();
    res.emit('close');
    expect(sessions.open()).toBeDefined();
    expect(a.close).toHaveBeenCalledOnce();
  });

  it('counts an initialize in flight against the cap until it settles', () => {
    sessions = new HttpSessions({ idleTimeoutMs: 60_000, maxSessions: 1 }, silentLogger);
    const opening = sessions.open() as Activity;
    expect(sessions.open()).toBeUndefined();
    sessions.settle(opening);
    expect(sessions.open()).toBeDefined();
  });

  it('expires a session idle past the timeout, but not one with a request in flight', () => {
    vi.useFakeTimers();
    sessions = new HttpSessions({ idleTimeoutMs: 1_000, maxSessions: 10 }, silentLogger);
    const idle = session();
    const busy = session();
    const idlePlace = sessions.open() as Activity;
    sessions.register(idlePlace, 'idle', idle);
    const busyPlace = sessions.open() as Activity;
    sessions.register(busyPlace, 'busy', busy);
    sessions.track(busyPlace, response());

    vi.advanceTimersByTime(1_500);
    expect(sessions.get('idle')).toBeUndefined();
    expect(idle.close).toHaveBeenCalledOnce();
    expect(sessions.get('busy')).toBeDefined();
    expect(sessions.size).toBe(1);
  });
});
