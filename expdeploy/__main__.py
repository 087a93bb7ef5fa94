from expdeploy.cli import main

main()
