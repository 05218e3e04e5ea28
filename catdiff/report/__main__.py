from catdiff.report.cli import main

main()
