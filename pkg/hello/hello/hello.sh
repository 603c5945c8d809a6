#!/bin/sh
# Prints this process's PID (1 when it runs in a new PID namespace, as a bundle under runc
# does) and a file that exists only in the hello image.
echo "hello: running as pid $$"
echo "hello: message.txt says: $(/bin/cat /hello/message.txt)"
