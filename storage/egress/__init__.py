"""Talking to URLs users gave us: the safe fetch, the address rules, and webhook signatures."""
