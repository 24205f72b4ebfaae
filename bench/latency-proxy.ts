import net from 'node:net';

/**
 * A TCP relay that holds every chunk for `oneWayMs` in each direction, so a PostgreSQL on
 * loopback answers as it would across a network with a round trip of twice that. Chunks keep
 * their order: timers of equal delay fire in the order they were set.
 */
export async function startLatencyProxy(target: { host: string; port: number }, oneWayMs: number) {
  const sockets = new Set<net.Socket>();
  const relay = (from: net.Socket, to: net.Socket) => {
    from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), oneWayMs));
    from.on('end', () => setTimeout(() => to.end(), oneWayMs));
    from.on('error', () => to.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    /** The same URL, through the relay. */
    url: (direct: string) => {
      const url = new URL(direct);
      url.host = `127.0.0.1:${port}`;
      return url.toString();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
