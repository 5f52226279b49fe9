from zapmux.cli import main

main()
