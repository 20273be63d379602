// What the end-to-end tests share.

import net from 'node:net';

/** A TCP port on 127.0.0.1 that is free right now, for a node's RPC. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}
