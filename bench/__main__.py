from bench.delivery import main

raise SystemExit(main())
