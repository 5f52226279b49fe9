import sys

from bench import delivery, hotpath

if sys.argv[1:2] == ["hotpath"]:
    raise SystemExit(hotpath.main(sys.argv[2:]))
raise SystemExit(delivery.main())
