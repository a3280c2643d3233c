"""`python -m keras_sagdq`: the `keras-sagdq` command (see `keras_sagdq.cli`)."""

from keras_sagdq.cli import main

if __name__ == "__main__":
    main()
