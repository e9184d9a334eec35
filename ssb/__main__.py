from ssb.cli import main

main()
