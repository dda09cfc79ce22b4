from dais.cli import main

raise SystemExit(main())
