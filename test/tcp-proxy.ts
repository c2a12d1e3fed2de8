import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A loopback TCP proxy a test can cut: `drop()` ends every connection through it at once (what a
 * Wi-Fi change or a proxy restart does to a browser's streams), and `refuse()` turns new ones away
 * until `accept()`. The browser under test talks to the control plane only through it.
 */
export class TcpProxy {
  private readonly server: Server;
  private readonly open = new Set<Socket>();
  private refusing = false;
  url = "";

  constructor(readonly target: URL) {
    this.server = createServer((client) => {
      if (this.refusing) {
        client.destroy();
        return;
      }
      const upstream = connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        this.open.add(s);
        s.on("close", () => this.open.delete(s));
        s.on("error", () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((res) => this.server.listen(0, "127.0.0.1", res));
    const addr = this.server.address();
    if (!addr || typeof addr === "string") throw new Error("proxy has no port");
    this.url = `http://127.0.0.1:${addr.port}`;
    return this;
  }

  /** Ends every connection now; returns how many there were. */
  drop(): number {
    const n = this.open.size;
    for (const s of this.open) s.destroy();
    return n;
  }

  refuse(): void {
    this.refusing = true;
  }

  accept(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    this.drop();
    await new Promise<void>((res) => this.server.close(() => res()));
  }
}
