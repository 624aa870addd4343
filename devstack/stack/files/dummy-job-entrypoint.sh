#!/bin/sh
# Stand-in for the seed's imlahso/dummy-job: sleeps SLEEPTIME seconds, logging each second,
# then moves SOURCE to DESTINATION. Fails with a "FAIL: ..." line when an input is missing.
if [ -z "${SOURCE:-}" ]; then echo "FAIL: SOURCE is not set"; exit 1; fi
if [ -z "${DESTINATION:-}" ]; then echo "FAIL: DESTINATION is not set"; exit 1; fi
if [ ! -e "$SOURCE" ]; then echo "FAIL: SOURCE $SOURCE does not exist"; exit 1; fi
total="${SLEEPTIME:-0}"
case "$total" in
  ''|*[!0-9]*) echo "FAIL: SLEEPTIME must be a whole number of seconds, got '$total'"; exit 1 ;;
esac
i=1
while [ "$i" -le "$total" ]; do
  echo "sleeping $i/$total"
  sleep 1
  i=$((i + 1))
done
mkdir -p "$(dirname "$DESTINATION")" || { echo "FAIL: cannot create $(dirname "$DESTINATION")"; exit 1; }
mv "$SOURCE" "$DESTINATION" || { echo "FAIL: cannot move $SOURCE to $DESTINATION"; exit 1; }
echo "moved $SOURCE to $DESTINATION"
