import sys

from digitseq.cli import main

sys.exit(main())
