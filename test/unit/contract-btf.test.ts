// The TypeScript codecs and enums against the BTF clang emitted for
// bpf/berth_contract.h: if either side changes alone, this fails.
import t from 'tap';
import { ALL_CODECS, CONTRACT_ENUMS, DROP_REASON_NAMES } from '../../src/platform/contract';
import { bpfObjectPath, native } from '../../src/platform/native';
import { TC_VETH_OBJECT } from '../../src/platform/contract';

const obj = native().openObject(bpfObjectPath(TC_VETH_OBJECT), { pinRoot: `/sys/fs/bpf/berth-test-contract-${process.pid}` });
t.teardown(() => obj.close());

for (const codec of ALL_CODECS) {
  t.test(`struct ${codec.cName}`, async (t) => {
    const btf = obj.btfStruct(codec.cName);
    t.equal(codec.size, btf.size, 'size');
    t.same(
      codec.layout.map((l) => ({ name: l.name, offset: l.offset, size: l.size })),
      btf.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
      'members, offsets and sizes',
    );
  });
}

for (const e of CONTRACT_ENUMS) {
  t.test(`enum ${e.cName}`, async (t) => {
    const btf = obj.btfEnum(e.cName);
    const expected: Record<string, number> = {};
    for (const [k, v] of Object.entries(e.values)) expected[e.prefix + k] = v;
    if (e.max !== undefined) expected[(e as { maxName?: string }).maxName ?? `${e.prefix}MAX`] = e.max;
    t.same(btf.values, expected);
  });
}

t.test('drop reason label names follow the enum order', async (t) => {
  const btf = obj.btfEnum('berth_drop_reason');
  for (const [name, v] of Object.entries(btf.values)) {
    if (name === 'BERTH_DROP_REASON_MAX') continue;
    t.equal(DROP_REASON_NAMES[v], name.replace('BERTH_DROP_', '').toLowerCase());
  }
});
