from mfg.cli import main

main()
