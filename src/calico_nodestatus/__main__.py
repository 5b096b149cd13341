from calico_nodestatus.cli.main import main

main()
