import sys

from q4gsw.cli import main

sys.exit(main())
