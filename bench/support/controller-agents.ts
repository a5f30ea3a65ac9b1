/**
 * Simulated host agents for the scale benchmark, in their own process so that
 * their CPU and memory are not counted as the controller's. Speaks the real
 * protocol (libs/wire) over loopback and applies every snapshot and delta.
 *
 * IPC: parent -> {type:'start', url, hosts}, {type:'report'}; child -> {type:'ready'}, {type:'report', ...}
 */
import { SimHost, SimulatedAgent } from '../../test/support/sim-agent';
import { expectedEntriesPerHost, scaleSize } from './scale-topology';

let agents: SimulatedAgent[] = [];
/** SCALE_AGENTS_KEEP=state: hold every entry, as the tests' agents do (default: each entry's hash; every entry is still decoded and checked) */
const KEEP = process.env.SCALE_AGENTS_KEEP === 'state' ? 'state' : 'digest';

process.on('message', (m: any) => {
  if (m.type === 'start') {
    const hosts = m.hosts as SimHost[];
    const expectedEntries = expectedEntriesPerHost(scaleSize()); // the parent's sizes: the same environment
    agents = hosts.map((h) => new SimulatedAgent(m.url, h, { minBackoffMs: 100, keep: KEEP, expectedEntries }));
    const poll = setInterval(() => {
      if (agents.every((a) => a.ackedVersion > 0)) {
        clearInterval(poll);
        process.send!({ type: 'ready' });
      }
    }, 20);
  } else if (m.type === 'report') {
    process.send!({
      type: 'report',
      digests: Object.fromEntries(agents.map((a) => [a.host.id, { version: a.ackedVersion, digest: a.digest() }])),
      entries: agents.reduce((n, a) => n + a.entryCount(), 0),
      snapshots: agents.reduce((n, a) => n + a.snapshots, 0),
      deltas: agents.reduce((n, a) => n + a.deltas, 0),
      nacks: agents.reduce((n, a) => n + a.nacks, 0),
      rss: process.memoryUsage().rss,
    });
  } else if (m.type === 'stop') {
    void Promise.all(agents.map((a) => a.stop())).then(() => process.exit(0));
  }
});
// a clean exit on the parent's SIGTERM, so that exit hooks (such as node --cpu-prof) run
process.on('SIGTERM', () => process.exit(0));
