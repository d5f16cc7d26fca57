/**
 * Reads V8 heap snapshots (e.g. the server's, written by `scripts/load.ts --snapshot-minutes`) and
 * says what grew between them, without DevTools:
 *
 *   npx tsx scripts/heapsnapshot.ts diff A.heapsnapshot B.heapsnapshot [top]
 *     self size and count per node type and constructor, B − A, largest changes first;
 *   npx tsx scripts/heapsnapshot.ts fields SNAPSHOT [Class,Class,…]
 *     for every object of these classes (default: the server's stateful ones), the retained size of
 *     each of its fields over 64 kB: the bytes that would be freed without that field (everything
 *     reachable from the roots, minus what stays reachable when the field's target is cut off).
 *
 * Weak and shortcut edges are not followed. Snapshots of the load test's server are ~30 MB of
 * JSON; run with `node --max-old-space-size=4096 --import tsx` if the default heap is too small.
 */
import { readFileSync } from 'node:fs';

interface Snapshot {
  readonly snapshot: {
    readonly meta: {
      readonly node_fields: string[];
      readonly node_types: [string[], ...unknown[]];
      readonly edge_fields: string[];
      readonly edge_types: [string[], ...unknown[]];
    };
  };
  readonly nodes: number[];
  readonly edges: number[];
  readonly strings: string[];
}

class Graph {
  readonly s: Snapshot;
  readonly width: number;
  readonly count: number;
  private readonly firstEdge: Uint32Array;
  private readonly mark: Uint32Array;
  private epoch = 0;
  private readonly f: Record<'type' | 'name' | 'self' | 'edges' | 'eType' | 'eName' | 'eTo', number>;

  constructor(path: string) {
    this.s = JSON.parse(readFileSync(path, 'utf8')) as Snapshot;
    const m = this.s.snapshot.meta;
    this.width = m.node_fields.length;
    this.f = {
      type: m.node_fields.indexOf('type'),
      name: m.node_fields.indexOf('name'),
      self: m.node_fields.indexOf('self_size'),
      edges: m.node_fields.indexOf('edge_count'),
      eType: m.edge_fields.indexOf('type'),
      eName: m.edge_fields.indexOf('name_or_index'),
      eTo: m.edge_fields.indexOf('to_node'),
    };
    this.count = this.s.nodes.length / this.width;
    this.firstEdge = new Uint32Array(this.count + 1);
    const ew = m.edge_fields.length;
    for (let n = 0, e = 0; n < this.count; n++) {
      this.firstEdge[n] = e;
      e += this.field(n, this.f.edges) * ew;
      this.firstEdge[n + 1] = e;
    }
    this.mark = new Uint32Array(this.count);
  }

  private field(node: number, at: number): number {
    return this.s.nodes[node * this.width + at] as number;
  }
  type(node: number): string {
    return this.s.snapshot.meta.node_types[0][this.field(node, this.f.type)] as string;
  }
  name(node: number): string {
    return this.s.strings[this.field(node, this.f.name)] as string;
  }
  self(node: number): number {
    return this.field(node, this.f.self);
  }

  /** Outgoing edges: type, name (property name or index) and target node. */
  *edges(node: number): Generator<{ type: string; name: string; to: number }> {
    const ew = this.s.snapshot.meta.edge_fields.length;
    const types = this.s.snapshot.meta.edge_types[0];
    for (let e = this.firstEdge[node] as number; e < (this.firstEdge[node + 1] as number); e += ew) {
      const type = types[this.s.edges[e + this.f.eType] as number] as string;
      const raw = this.s.edges[e + this.f.eName] as number;
      const name = type === 'element' || type === 'hidden' ? String(raw) : (this.s.strings[raw] as string);
      yield { type, name, to: (this.s.edges[e + this.f.eTo] as number) / this.width };
    }
  }

  /** Bytes reachable from the root (node 0) without passing through `blocked` (-1: none). */
  reachable(blocked: number): number {
    this.epoch++;
    const stack = [0];
    this.mark[0] = this.epoch;
    if (blocked >= 0) this.mark[blocked] = this.epoch;
    let total = 0;
    while (stack.length > 0) {
      const n = stack.pop() as number;
      total += this.self(n);
      for (const e of this.edges(n)) {
        if (e.type === 'weak' || e.type === 'shortcut' || this.mark[e.to] === this.epoch) continue;
        this.mark[e.to] = this.epoch;
        stack.push(e.to);
      }
    }
    return total;
  }
}

function byConstructor(g: Graph): Map<string, { count: number; bytes: number }> {
  const out = new Map<string, { count: number; bytes: number }>();
  for (let n = 0; n < g.count; n++) {
    const type = g.type(n);
    const name = /string|number|code|closure/.test(type) ? '' : g.name(n).slice(0, 60);
    const key = `${type}${name === '' ? '' : `: ${name}`}`;
    const e = out.get(key) ?? { count: 0, bytes: 0 };
    e.count++;
    e.bytes += g.self(n);
    out.set(key, e);
  }
  return out;
}

const DEFAULT_CLASSES =
  'Aggregator,TaskCoordinator,LocalAdmissionCounter,Selector,BodyPool,SqliteStorage,SegmentWriter,PayloadRing,JournalWriter,FedBuff';
const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;

const [command, a, b, extra] = process.argv.slice(2);
if (command === 'diff' && a !== undefined && b !== undefined) {
  const before = byConstructor(new Graph(a));
  const after = byConstructor(new Graph(b));
  const keys = new Set([...before.keys(), ...after.keys()]);
  const rows = [...keys].map((key) => {
    const x = before.get(key) ?? { count: 0, bytes: 0 };
    const y = after.get(key) ?? { count: 0, bytes: 0 };
    return { key, dBytes: y.bytes - x.bytes, dCount: y.count - x.count, x, y };
  });
  const total = (m: Map<string, { bytes: number }>) => [...m.values()].reduce((s, e) => s + e.bytes, 0);
  console.log(`self size ${kib(total(before))} → ${kib(total(after))}`);
  rows.sort((p, q) => Math.abs(q.dBytes) - Math.abs(p.dBytes));
  for (const r of rows.slice(0, Number(extra ?? 25)))
    console.log(
      `${kib(r.dBytes).padStart(11)} ${String(r.dCount).padStart(8)}  (${r.x.count} → ${r.y.count})  ${r.key}`,
    );
} else if (command === 'fields' && a !== undefined) {
  const g = new Graph(a);
  const classes = new Set((b ?? DEFAULT_CLASSES).split(','));
  const all = g.reachable(-1);
  console.log(`reachable ${kib(all)} in ${g.count} nodes`);
  for (let n = 0; n < g.count; n++) {
    if (g.type(n) !== 'object' || !classes.has(g.name(n))) continue;
    console.log(g.name(n));
    for (const e of g.edges(n)) {
      if (e.type !== 'property') continue;
      const retained = all - g.reachable(e.to);
      if (retained > 64 * 1024)
        console.log(
          `  ${e.name.padEnd(24)} ${kib(retained).padStart(11)}  (${g.type(e.to)} ${g.name(e.to)})`,
        );
    }
  }
} else {
  console.error(
    'usage: heapsnapshot.ts diff A.heapsnapshot B.heapsnapshot [top] | fields SNAPSHOT [Class,…]',
  );
  process.exitCode = 2;
}
