"""Services: what the API and the operator commands do to accounts, users, keys and calls, each
one function both of them call (so every rule holds alike). They use ``billing`` for money and
``core`` for everything else; ``core`` and ``billing`` never import them."""
