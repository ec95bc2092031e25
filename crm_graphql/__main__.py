import sys

from crm_graphql.cli import main

sys.exit(main())
