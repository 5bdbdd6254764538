from commpulse.cli import main

main()
