/**
 * Child process for the benchmark: runs our BgpSpeaker as the receiver and
 * reports, over IPC, when it holds the expected number of routes and how
 * much memory it uses (after a full GC; run with --expose-gc).
 */
import { BgpSpeaker } from '#sdn/bgp';

interface Start {
  address: string;
  port: number;
  sender: string;
  senderAs: number;
  ipv4: number;
  evpn: number;
}

function memory() {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed };
}

process.on('message', (msg: Start) => {
  void (async () => {
    const speaker = new BgpSpeaker({ asn: 65000, routerId: '10.0.0.200', listen: { address: msg.address, port: msg.port }, gracefulRestart: { enabled: false } });
    speaker.addNeighbor({ address: msg.sender, asn: msg.senderAs, passive: true });
    await speaker.start();
    const baseline = memory();
    process.send!({ type: 'ready', baseline });
    let v4Reported = false;
    const timer = setInterval(() => {
      const v4 = speaker.routeCount('ipv4-unicast');
      const ev = speaker.routeCount('l2vpn-evpn');
      if (!v4Reported && v4 >= msg.ipv4) {
        v4Reported = true;
        process.send!({ type: 'ipv4', at: Date.now() });
      }
      if (v4 >= msg.ipv4 && ev >= msg.evpn) {
        clearInterval(timer);
        const at = Date.now();
        const mem = memory();
        process.send!({ type: 'done', at, v4, ev, mem, counters: speaker.neighbor(msg.sender)?.counters });
      }
    }, 20);
  })();
});
