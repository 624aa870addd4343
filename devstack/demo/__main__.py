"""``make run``: play one EDC contract end to end on the local stack."""

import sys

from devstack.demo.contract import play

if __name__ == "__main__":
    outcome = play()
    sys.exit(0 if outcome.state == "COMPLETE" and outcome.namespace_gone else 1)
