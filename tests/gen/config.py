#!/usr/bin/env python3
"""Parse tests/fixtures/config/*.yaml|json with PyYAML (an independent YAML
parser) and write NAME.expect.json next to each: what every key must read as.
test-config.c loads the same files with lib/config.c and compares.
Run: python3 tests/gen/config.py"""
import glob, json, os, yaml
d = os.path.join(os.path.dirname(__file__), '..', 'fixtures', 'config')
for f in sorted(glob.glob(os.path.join(d, '*.yaml')) + glob.glob(os.path.join(d, 'plain.json'))):
    with open(f) as fp:
        v = yaml.safe_load(fp)
    out = os.path.splitext(f)[0] + '.expect.json'
    with open(out, 'w') as fp:
        json.dump(v, fp, indent=1, sort_keys=True)
        fp.write('\n')
    print(out)
