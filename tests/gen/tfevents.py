#!/usr/bin/env python3
"""TensorBoard event-file fixtures for tests/test-tfevents.c.

1. Writes the scalars of POINTS with tensorboardX's SummaryWriter (an
   independent writer) at fixed wall times, and copies the event file to
   tests/fixtures/tfevents/tbx.tfevents; test-tfevents.c writes the same
   points and compares byte for byte.
2. If build/rel/tests/test-tfevents exists, runs it with --write to make our
   own file and reads that back with TensorBoard's EventAccumulator and
   summary_iterator, checking every tag, step and value.
3. With a lora-train logging_dir as argument, reads its event file with
   EventAccumulator and checks every value against the run's loss.csv.
Run: make build/rel/tests/test-tfevents && python3 tests/gen/tfevents.py [LOGDIR]"""
import glob, os, shutil, struct, subprocess, sys, tempfile, time
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'fixtures', 'tfevents')
# (tag, step, value, wall_time): keep in sync with test-tfevents.c
LONG = 'x' * 200
POINTS = [('train/loss', 0, 2.5, 1700000001.25), ('train/lr', 1, 0.0002, 1700000002.5),
          ('loss', 10, 0.5, 1700000003.0), ('eval/loss', 300, -1.75, 1700000004.125),
          ('train/loss', 70000, 1e-30, 1700000005.0), (LONG, 123456789, 3.0e38, 1700000006.0)]
T0 = 1700000000.5

def write_tbx(d):
    from tensorboardX import SummaryWriter
    with mock.patch('time.time', return_value=T0):
        w = SummaryWriter(logdir=d, flush_secs=1)
        w.file_writer  # opens the file: the version record takes time.time()
    for tag, step, v, wt in POINTS:
        w.add_scalar(tag, v, step, walltime=wt)
    w.close()
    (f,) = glob.glob(os.path.join(d, 'events.out.tfevents.*'))
    return f

def read_back(path):
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.compat.proto import event_pb2
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    recs = [event_pb2.Event.FromString(r) for r in RawEventFileLoader(path).Load()]
    assert recs[0].file_version == 'brain.Event:2', recs[0]
    assert abs(recs[0].wall_time - T0) < 1e-6
    got = [(e.summary.value[0].tag, e.step, e.summary.value[0].simple_value, e.wall_time)
           for e in recs[1:]]
    for (t, s, v, w), (t2, s2, v2, w2) in zip(POINTS, got):
        assert (t, s, w) == (t2, s2, w2), (t, s, w, t2, s2, w2)
        assert struct.pack('<f', v) == struct.pack('<f', v2), (v, v2)
    assert len(got) == len(POINTS)
    acc = event_accumulator.EventAccumulator(os.path.dirname(path))
    acc.Reload()
    for tag in set(p[0] for p in POINTS):
        want = [(p[1], struct.unpack('<f', struct.pack('<f', p[2]))[0]) for p in POINTS if p[0] == tag]
        have = [(e.step, e.value) for e in acc.Scalars(tag)] if want else []
        assert want == have, (tag, want, have)
    print('tensorboard reads', path, 'back:', len(got), 'scalars ok')

def check_run(logdir):
    import csv
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(logdir)
    acc.Reload()
    rows = list(csv.DictReader(open(os.path.join(logdir, 'loss.csv'))))
    f32 = lambda x: struct.unpack('<f', struct.pack('<f', float(x)))[0]
    n = 0
    for tag, col in [('train/loss', 'loss'), ('train/lr', 'lr'), ('train/grad_norm', 'grad_norm'),
                     ('eval/loss', 'eval_loss')]:
        key = 'eval_loss' if col == 'eval_loss' else 'loss'
        want = [(int(r['step']), float(r[col])) for r in rows if r[key] != '']
        have = [(e.step, e.value) for e in acc.Scalars(tag)] if want else []
        assert len(want) == len(have), (tag, len(want), len(have))
        for (s1, v1), (s2, v2) in zip(want, have):
            assert s1 == s2 and abs(f32(v1) - v2) <= 1e-6 * max(1, abs(v2)), (tag, s1, v1, s2, v2)
        n += len(have)
    print('tensorboard reads', logdir, 'back:', n, 'scalars match loss.csv')

def main():
    if len(sys.argv) > 1:
        return check_run(sys.argv[1])
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        f = write_tbx(d)
        shutil.copy(f, os.path.join(OUT, 'tbx.tfevents'))
        print('wrote', os.path.join(OUT, 'tbx.tfevents'), os.path.getsize(f), 'bytes')
    exe = os.path.join(HERE, '..', '..', 'build', 'rel', 'tests', 'test-tfevents')
    if os.path.exists(exe):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, 'events.out.tfevents.ours')
            subprocess.check_call([exe, '--write', p])
            read_back(p)
    else:
        print('no', exe, ': skipping the reader check', file=sys.stderr)

main()
