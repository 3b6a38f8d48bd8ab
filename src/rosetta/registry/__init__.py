"""The MLflow model registry: reading a version and checking its files (``refs``), registering one with its evidence
(``versions``, ``evidence``), the promotion rule (``rule``, pure) and its application (``promotion``, with the
per-set guard ``guard``), each version's decision history (``decisions``), the lock that makes one writer at a time
(``lock``), and a version copied to another registry (``transfer``)."""
