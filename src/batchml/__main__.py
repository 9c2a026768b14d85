from batchml.cli.main import main

main()
