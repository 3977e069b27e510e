import sys

from digitseq.apps.cli.main import main

sys.exit(main())
