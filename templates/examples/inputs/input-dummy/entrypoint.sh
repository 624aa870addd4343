#!/bin/sh
# input-dummy's entrypoint: proves each input arrived where the asset says, then writes /output/result.
set -eu
[ -f /data/input_testfile ] || { echo "FAIL: /data/input_testfile missing"; exit 1; }
[ -f /data/hello.txt ] && [ -f /data/more/nested.txt ] || { echo "FAIL: input.zip was not unpacked into /data/"; exit 1; }
echo "inputs present: $(ls /data | tr '\n' ' ')"
mkdir -p /output
{
  echo "greeting: ${GREETING:-unset}"
  echo "testfile: $(cat /data/input_testfile)"
  echo "zipped: $(cat /data/hello.txt) / $(cat /data/more/nested.txt)"
} > /output/result
echo "wrote /output/result"
