from cae.cli import main

raise SystemExit(main())
