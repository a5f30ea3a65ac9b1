/**
 * A captured session between our speaker and FRR bgpd (EVPN and unicast
 * UPDATEs, withdrawals, KEEPALIVEs, End-of-RIB) decodes in tshark with no
 * malformed packets and no expert warnings; meanwhile a peer sending garbage
 * gets NOTIFICATION 1/1 and the FRR session keeps working.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, statSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BgpSpeaker, decode, type Notification } from '#sdn/bgp';
import { FrrBgpd } from './support/frr.js';
import { waitFor } from './support/wait.js';

const run = promisify(execFile);
const OURS = '127.0.4.1';
const FRR = '127.0.4.3';
const GARBAGE = '127.0.4.9';
const FRR_PORT = 21822;
const OUR_PORT = 21823;

const frrConfig = `frr defaults traditional
hostname frr-capture
!
router bgp 65004
 bgp router-id 10.0.0.4
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 no bgp network import-check
 neighbor ${OURS} remote-as 65001
 neighbor ${OURS} passive
 neighbor ${OURS} timers 3 9
 address-family ipv4 unicast
  network 10.110.0.0/16
  neighbor ${OURS} activate
 exit-address-family
 address-family ipv6 unicast
  neighbor ${OURS} activate
 exit-address-family
 address-family l2vpn evpn
  neighbor ${OURS} activate
 exit-address-family
!
`;

describe('packet capture and a garbage-sending peer', { timeout: 120000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'bgp-capture-'));
  const pcap = join(dir, 'session.pcapng');
  const frr = new FrrBgpd(FRR, FRR_PORT, frrConfig);
  let s: BgpSpeaker | undefined;
  const tshark = spawn('tshark', ['-i', 'lo', '-f', `tcp port ${FRR_PORT} or tcp port ${OUR_PORT}`, '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
  let tsharkErr = '';
  tshark.stderr.on('data', (c: Buffer) => (tsharkErr += c.toString()));

  after(async () => {
    await s?.stop();
    await frr.stop();
    if (tshark.exitCode === null) tshark.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('captures a session that tshark decodes without malformed packets or expert warnings, while a garbage peer is refused', async () => {
    await waitFor('tshark capturing', () => tsharkErr.includes('Capturing on'), 20000);
    await frr.start();
    s = new BgpSpeaker({ asn: 65001, routerId: '10.0.0.1', listen: { address: OURS, port: OUR_PORT }, holdTime: 9 });
    s.addNeighbor({ address: FRR, port: FRR_PORT, asn: 65004, localAddress: OURS, connectRetryTime: 1 });
    s.addNeighbor({ address: GARBAGE, asn: 65009, passive: true });
    await s.start();
    await waitFor('session with FRR', () => s!.neighbor(FRR)?.state === 'established');
    const ext = [{ kind: 'route-target' as const, value: '65001:100' }, { kind: 'encapsulation' as const, tunnelType: 8 }];
    const mac = { routeType: 2 as const, rd: '10.0.0.1:100', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, mac: 'aa:bb:cc:00:04:01', ip: '192.168.4.11', labels: [10100, 50000] as [number, number] };
    s.addRoute({ family: 'l2vpn-evpn', route: mac, nextHop: '10.255.0.1', attributes: { communities: [65001 * 65536 + 1], largeCommunities: [{ global: 65001, local1: 1, local2: 1 }], extendedCommunities: [...ext, { kind: 'router-mac', mac: '02:00:00:00:00:01' }] } });
    s.addRoute({ family: 'l2vpn-evpn', route: { routeType: 3, rd: '10.0.0.1:100', ethernetTag: 0, originatorIp: '10.255.0.1' }, nextHop: '10.255.0.1', attributes: { pmsiTunnel: { flags: 0, tunnelType: 6, label: 10100, tunnelId: '10.255.0.1' }, extendedCommunities: ext } });
    s.addRoute({ family: 'l2vpn-evpn', route: { routeType: 5, rd: '65001:5', esi: '00:00:00:00:00:00:00:00:00:00', ethernetTag: 0, prefix: '10.72.0.0/24', gateway: '0.0.0.0', label: 50000 }, nextHop: '10.255.0.1', attributes: { extendedCommunities: ext } });
    s.addRoute({ family: 'ipv4-unicast', prefix: '10.111.0.0/16', nextHop: '10.255.0.1' });
    s.addRoute({ family: 'ipv6-unicast', prefix: '2001:db8:111::/48', nextHop: '2001:db8::1' });
    await waitFor('FRR has our routes', async () => (await frr.json<{ numPrefix: number }>('show bgp l2vpn evpn route detail json')).numPrefix === 3);
    await waitFor('FRR route here', () => s!.route('ipv4-unicast', '10.110.0.0/16'));

    // The garbage peer: TCP connects from a configured address, then sends junk.
    const sock = net.connect({ host: OURS, port: OUR_PORT, localAddress: GARBAGE });
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((r) => sock.once('connect', r));
    sock.write(Buffer.from('GET / HTTP/1.1\r\nHost: speaker\r\n\r\n'));
    await new Promise((r) => sock.once('close', r));
    const all = Buffer.concat(chunks);
    const openLen = all.readUInt16BE(16);
    const n = decode(all.subarray(openLen, openLen + all.readUInt16BE(openLen + 16))) as Notification;
    assert.deepEqual([n.type, n.code, n.subcode], ['notification', 1, 1]);
    assert.equal(s.neighbor(GARBAGE)!.lastError?.code, 1);

    // The FRR session is untouched and keeps taking changes.
    s.withdrawRoute({ family: 'l2vpn-evpn', route: mac });
    await waitFor('withdrawal reaches FRR', async () => (await frr.json<{ numPrefix: number }>('show bgp l2vpn evpn route detail json')).numPrefix === 2);
    assert.equal(s.neighbor(FRR)!.state, 'established');
    assert.equal(s.neighbor(FRR)!.counters.establishedTransitions, 1);
    await new Promise((r) => setTimeout(r, 3500)); // let a KEEPALIVE pass both ways

    await s.stop();
    s = undefined;
    await new Promise((r) => setTimeout(r, 500));
    const exited = new Promise((r) => tshark.once('exit', r));
    tshark.kill('SIGINT');
    await exited;
    assert.ok(existsSync(pcap) && statSync(pcap).size > 0);

    const decodeArgs = ['-r', pcap, '-d', `tcp.port==${FRR_PORT},bgp`, '-d', `tcp.port==${OUR_PORT},bgp`];
    const { stdout: fields } = await run('tshark', [...decodeArgs, '-Y', 'bgp', '-T', 'fields', '-e', 'bgp.type'], { maxBuffer: 1 << 24 });
    const types = new Set(fields.split(/[\n,]/).filter(Boolean));
    for (const t of ['1', '2', '3', '4']) assert.ok(types.has(t), `capture has BGP message type ${t}`);
    // TCP's own sequence analysis may warn on loopback under load (e.g. a D-SACK after a
    // spurious retransmission): that is the kernel's business, not BGP's, so it is excluded.
    const bad = '_ws.malformed || (_ws.expert.severity >= "warning" && !tcp.analysis.flags && !tcp.options.sack.dsack)';
    const { stdout: malformed } = await run('tshark', [...decodeArgs, '-Y', bad], { maxBuffer: 1 << 24 });
    if (malformed.trim() !== '') {
      const { stdout: detail } = await run('tshark', [...decodeArgs, '-Y', bad, '-V'], { maxBuffer: 1 << 24 });
      assert.fail(`malformed packets or expert warnings:\n${malformed}\n${detail.slice(0, 6000)}`);
    }
    const { stdout: expert } = await run('tshark', [...decodeArgs, '-q', '-z', 'expert'], { maxBuffer: 1 << 24 });
    if (process.env.BGP_TEST_VERBOSE) console.log(expert, fields.slice(0, 200));
    assert.doesNotMatch(expert, /Malformed/, expert);
    // Every Error/Warning line of the expert summary must be TCP's.
    let section = '';
    const offending: string[] = [];
    for (const line of expert.split('\n')) {
      const head = /^(Errors|Warnings|Notes|Chats)\s*\(/.exec(line);
      if (head) section = head[1];
      const row = /^\s*\d+\s+\S+\s+(\S+)\s+(.*)$/.exec(line);
      if (row && (section === 'Errors' || section === 'Warnings') && row[1] !== 'TCP') offending.push(line);
    }
    assert.deepEqual(offending, [], expert);
  });
});
