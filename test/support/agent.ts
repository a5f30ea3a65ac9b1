/**
 * Agent test helpers: host states compiled by the real compiler from the
 * model as the directory's database holds it (libs/store loadSnapshot ->
 * compileHost), and datapaths bound to test host namespaces.
 */
import { compileHost, diffStates, HostDelta, HostState } from '#sdn/compiler';
import { createModelStore, ModelStore } from '#sdn/store';
import { Datapath, defaultDatapathConfig } from '#sdn/datapath';
import type { TestHost } from './netns';

export class CompiledModel {
  readonly store: ModelStore;
  constructor(databaseUrl: string) {
    this.store = createModelStore(databaseUrl, { poolSize: 2 });
  }

  /** every given host's state at the directory's current revision */
  async states(hostIds: string[]): Promise<Map<string, HostState>> {
    const snap = await this.store.loadSnapshot();
    return new Map(hostIds.map((id) => [id, compileHost(snap, id)]));
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

export function datapathFor(h: TestHost): Datapath {
  return new Datapath({ ...defaultDatapathConfig(), hostNetns: h.ns, nsPrefix: h.domainPrefix });
}

export function deltaBetween(a: HostState, b: HostState): HostDelta {
  return diffStates(a, b);
}
