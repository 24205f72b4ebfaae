/*
 * The loopback embedding stub as a process of its own (forked by embedding-stub-process.ts): a
 * real provider never shares the caller's event loop, so a benchmark timing ingest against the
 * stub's floor must not let the engine's work delay the stub's answers.
 * IPC: sends { openaiUrl, ollamaUrl } once listening; takes { delayMs } (acknowledged with
 * { delayMs }) and { cpu: true } (answered with { cpuMs }, its CPU time so far), and exits when
 * the parent disconnects.
 */
import { startEmbeddingStub } from './embedding-stub.js';

const stub = await startEmbeddingStub();
process.on('message', (message: { delayMs?: unknown; cpu?: unknown }) => {
  if (message.cpu === true) {
    const { user, system } = process.cpuUsage();
    process.send?.({ cpuMs: (user + system) / 1000 });
    return;
  }
  if (typeof message.delayMs === 'number') stub.delayMs = message.delayMs;
  process.send?.({ delayMs: stub.delayMs });
});
process.on('disconnect', () => void stub.close().then(() => process.exit(0)));
process.send?.({ openaiUrl: stub.openaiUrl, ollamaUrl: stub.ollamaUrl });
