// A measurement floor, not a product: the least a Node front can do per
// request to put GET /hello/bench through php-cgi over FastCGI with kept-alive
// connections. No limits, no timeouts, no error handling, no preset checks
// beyond the two stat calls nginx's try_files makes too. Shared by the two
// floor servers beside it; see bench/floors.ts.
import net from 'node:net';

const ONE_BYTE = Array.from({ length: 128 }, (_, i) => String.fromCharCode(i));
const size = (n) => (n <= 127 ? ONE_BYTE[n] : String.fromCharCode(0x80 | (n >>> 24), (n >>> 16) & 255, (n >>> 8) & 255, n & 255));

function header(b, at, type, len, pad) {
  b[at] = 1; b[at + 1] = type; b[at + 2] = 0; b[at + 3] = 1; b[at + 4] = len >> 8; b[at + 5] = len & 255; b[at + 6] = pad; b[at + 7] = 0;
}

/** BEGIN_REQUEST (keep-conn), one PARAMS record, the empty PARAMS and STDIN records. */
function encode(params) {
  let body = '';
  for (const [k, v] of params) body += size(k.length) + size(v.length) + k + v;
  const n = body.length, pad = -n & 7;
  const b = Buffer.allocUnsafe(24 + n + pad + 16);
  header(b, 0, 1, 8, 0); b[8] = 0; b[9] = 1; b[10] = 1; b.fill(0, 11, 16);
  header(b, 16, 4, n, pad); b.write(body, 24, n, 'latin1'); b.fill(0, 24 + n, 24 + n + pad);
  header(b, 24 + n + pad, 4, 0, 0); header(b, 32 + n + pad, 5, 0, 0);
  return b;
}

/** `connections` kept-alive FastCGI connections and a FIFO of requests; done(raw CGI output) per request. */
export function fastcgiPool(socketPath, connections) {
  const idle = [], queue = [];
  class Conn {
    constructor() { this.s = net.connect(socketPath); this.buf = null; this.job = null; this.out = []; this.s.on('data', (d) => this.onData(d)); }
    start(job) { this.job = job; this.out = []; this.s.write(encode(job.params)); }
    onData(d) {
      const b = this.buf ? Buffer.concat([this.buf, d]) : d;
      let at = 0;
      while (b.length - at >= 8) {
        const type = b[at + 1], len = (b[at + 4] << 8) | b[at + 5], pad = b[at + 6];
        if (b.length - at < 8 + len + pad) break;
        const content = b.subarray(at + 8, at + 8 + len);
        at += 8 + len + pad;
        if (type === 6 && len > 0) this.out.push(content);
        else if (type === 3) this.finish();
      }
      this.buf = at < b.length ? b.subarray(at) : null;
    }
    finish() {
      const job = this.job;
      this.job = null;
      job.done(this.out.length === 1 ? this.out[0] : Buffer.concat(this.out));
      const next = queue.shift();
      if (next) this.start(next); else idle.push(this);
    }
  }
  for (let i = 0; i < connections; i++) idle.push(new Conn());
  return (params, done) => {
    const job = { params, done };
    const c = idle.pop();
    if (c) c.start(job); else queue.push(job);
  };
}

/** CGI output → status line text, header lines, body. */
export function splitCgi(raw) {
  const end = raw.indexOf('\r\n\r\n');
  let status = '200 OK';
  const headers = [];
  for (const line of raw.latin1Slice(0, end).split('\r\n')) {
    const c = line.indexOf(':');
    const name = line.slice(0, c);
    if (name.toLowerCase() === 'status') status = line.slice(c + 1).trim();
    else headers.push([name, line.slice(c + 1).trim()]);
  }
  return { status, headers, body: raw.subarray(end + 4) };
}
