"""Test helpers shipped with the library: :func:`.host_reads.record_host_reads`."""
