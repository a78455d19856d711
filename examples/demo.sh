#!/bin/sh
# The README's tour. Filled in as tools land.
set -e
echo "demo: nothing yet"
