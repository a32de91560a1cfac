"""The remote CLI: ``aegir`` commands that talk to a server over HTTP and websockets only.

Nothing here imports the server's code: the same commands work from a laptop against a
remote install, with the URL and token that ``aegir login`` kept.
"""
