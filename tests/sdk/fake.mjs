// Starts `hubconnect fake` (HUBCONNECT_BIN, default ../../target/debug/hubconnect) and reads its JSON ready line.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
export const bin = process.env.HUBCONNECT_BIN || path.join(here, '..', '..', 'target', 'debug', 'hubconnect');

export async function startFake(args = []) {
  const child = spawn(bin, ['fake', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('hubconnect fake printed no ready line in 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`hubconnect fake exited early with ${code}`)));
    lines.once('line', (line) => { clearTimeout(timer); resolve(JSON.parse(line)); });
  });
  const base = ready.base_url;
  return {
    ready,
    base,
    /** The control API: GET without a body, POST with one. */
    async control(route, body) {
      const init = body === undefined ? {} : {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      };
      const answer = await fetch(`${base}/__fake/${route}`, init);
      return { status: answer.status, body: await answer.json() };
    },
    /** SIGTERM, then the exit code. */
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
      child.kill('SIGTERM');
      return exited;
    },
  };
}
