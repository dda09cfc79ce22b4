from gateway import native

native.load(__path__)
