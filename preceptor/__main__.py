import sys

from preceptor.cli import main

sys.exit(main())
