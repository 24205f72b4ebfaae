import { lineSafe } from './terminal-text.js';

/**
 * Logs go to stderr as one line each: stdout carries JSON-RPC and nothing else. A line may carry
 * an agent's text (an error its code raised, a table name it chose): it is cut to
 * MAX_LOG_LINE_CHARS, then its control characters are escaped (terminal-text.ts), so neither the
 * terminal nor the cost of a line is the agent's to decide.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

/** The most characters of message and fields a log line shows (before escaping). */
export const MAX_LOG_LINE_CHARS = 16 * 1024;

const bounded = (text: string) =>
  text.length <= MAX_LOG_LINE_CHARS ? text : `${text.slice(0, MAX_LOG_LINE_CHARS)} … (${text.length - MAX_LOG_LINE_CHARS} more characters)`;

export function createStderrLogger(level: LogLevel, write: (line: string) => unknown = (line) => process.stderr.write(line)): Logger {
  const at = (lineLevel: Exclude<LogLevel, 'silent'>) => (message: string, fields?: LogFields) => {
    if (RANK[lineLevel] < RANK[level]) return;
    // Each string cut before JSON.stringify, which would write a huge one whole (six characters per control).
    const extra = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields, (_key, value: unknown) => (typeof value === 'string' ? bounded(value) : value))}` : '';
    write(`${new Date().toISOString()} pg-workspace-mcp ${lineLevel}: ${lineSafe(bounded(bounded(message) + extra))}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export const silentLogger: Logger = createStderrLogger('silent');
