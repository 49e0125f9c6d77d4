from moegrow.cli import main

raise SystemExit(main())
