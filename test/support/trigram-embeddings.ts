import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Embedder, Embedding, EmbeddingSpace } from '../../src/embeddings/embedder.js';

/*
 * A loopback OpenAI-compatible /v1/embeddings stub for search tests, until the embed branch's
 * provider and stub land: deterministic vectors where texts sharing words (and word forms,
 * through character trigrams) are near each other. Counts the texts it was asked to embed.
 */

export const STUB_DIMENSIONS = 768;

export function trigramEmbedding(text: string, dimensions = STUB_DIMENSIONS): number[] {
  const vector = new Array<number>(dimensions).fill(0);
  for (const word of text.toLowerCase().match(/[a-z0-9_]+/g) ?? []) {
    const padded = `#${word}#`;
    for (let i = 0; i + 3 <= padded.length; i++) {
      const digest = createHash('md5').update(padded.slice(i, i + 3)).digest();
      const slot = digest.readUInt32LE(0) % dimensions;
      vector[slot] = (vector[slot] ?? 0) + ((digest[4] as number) & 1 ? 1 : -1);
    }
  }
  const norm = Math.hypot(...vector) || 1;
  return vector.map((v) => v / norm);
}

export interface TrigramStub {
  url: string;
  /** Texts embedded so far, in request order. */
  texts: string[];
  requests: number;
  close(): Promise<void>;
}

export async function startTrigramStub(): Promise<TrigramStub> {
  const stub = { texts: [] as string[], requests: 0 };
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const { input } = JSON.parse(body) as { input: string[] };
      stub.requests++;
      stub.texts.push(...input);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ data: input.map((text, index) => ({ index, embedding: trigramEmbedding(text) })) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(stub, {
    url: `http://127.0.0.1:${port}/v1`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/** A minimal client of the stub, batching as a provider client would. */
export function stubEmbedder(url: string, batch = 64): Embedder {
  const space: EmbeddingSpace = { provider: 'openai', model: 'trigram-stub', dimensions: STUB_DIMENSIONS, queryPrefix: '', documentPrefix: '' };
  const post = async (input: string[]): Promise<Embedding[]> => {
    const response = await fetch(`${url}/embeddings`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: space.model, input }) });
    const { data } = (await response.json()) as { data: Array<{ index: number; embedding: number[] }> };
    return data.sort((a, b) => a.index - b.index).map((d) => ({ vector: d.embedding }));
  };
  return {
    space,
    async embedDocuments(texts) {
      const out: Embedding[] = [];
      for (let at = 0; at < texts.length; at += batch) out.push(...(await post(texts.slice(at, at + batch))));
      return out;
    },
    async embedQuery(text) {
      return (await post([text]))[0] as Embedding;
    },
  };
}
