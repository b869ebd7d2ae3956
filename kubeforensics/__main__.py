from kubeforensics.cli import main

raise SystemExit(main())
