/**
 * `npm start` runs the system: the directory, and the controller as a child
 * process of it (SDN_START_CONTROLLER=1, the default). A child rather than the
 * same process: the controller's work would otherwise share the directory's
 * event loop (bench:scale runs them apart for that reason). The child gets the
 * database the directory uses (the embedded one included) and the rest of the
 * environment (CONTROLLER_PORT, SDN_TLS_CERT, ...); a child that exits is
 * started again, after 1 s and up to 30 s when it keeps failing.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { log } from './common/log';

export interface ControllerChild {
  /** the running child's pid, or null between restarts */
  readonly pid: number | null;
  stop(): Promise<void>;
}

export function startControllerChild(databaseUrl: string, script = join(__dirname, '..', '..', 'controller', 'src', 'main.js')): ControllerChild {
  let child: ChildProcess | null = null;
  let stopping = false;
  let delay = 1000;
  let timer: NodeJS.Timeout | null = null;
  const start = () => {
    timer = null;
    const startedAt = Date.now();
    // the directory's Node flags (source maps, heap) but not its inspector, whose port the child could not have too
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--inspect'));
    const c = fork(script, [], { env: { ...process.env, DATABASE_URL: databaseUrl }, stdio: 'inherit', execArgv });
    child = c;
    c.on('exit', (code, signal) => {
      if (child === c) child = null;
      if (stopping) return;
      // a child that ran for a minute was healthy: its restart starts the back-off again
      if (Date.now() - startedAt > 60_000) delay = 1000;
      log.error('controller exited; starting it again', { code, signal, inMs: delay });
      timer = setTimeout(start, delay);
      delay = Math.min(delay * 2, 30_000);
    });
  };
  start();
  return {
    get pid() {
      return child?.pid ?? null;
    },
    async stop() {
      stopping = true;
      if (timer) clearTimeout(timer);
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
      c.kill('SIGTERM');
      const force = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(force);
    },
  };
}
