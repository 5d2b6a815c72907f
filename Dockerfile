# The authsession service image: the released binary on a runtime base with only what it links
# against (glibc, libgcc) and CA certificates, run as a non-root user.
#
# A runtime stage only, from the binary `cargo build --release` made (the one the tests ran
# against, built with the locked dependencies), not a builder stage: the image then holds exactly
# the tested binary, and building it needs no Rust toolchain image. The binary links glibc
# dynamically, so the runtime base must be Debian 12 (bookworm) or newer, as the build host is.
#
#   cargo build --release --bin authsession
#   mkdir -p target/image && cp target/release/authsession target/image/
#   docker build -f Dockerfile -t authsession:0.1.0 target/image
#
# The build context is that one-file directory (the repository's `target/` holds gigabytes).
# RUNTIME_IMAGE defaults to the official distroless base (glibc, libgcc, CA certificates, no
# shell, user 65532); a machine without a registry builds a stand-in locally (README: "Container
# image").
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${RUNTIME_IMAGE}

# The release pipeline sets both (`--build-arg VERSION=... --build-arg SOURCE=<repository URL>`).
ARG VERSION=0.1.0
ARG SOURCE=
LABEL org.opencontainers.image.title="authsession" \
      org.opencontainers.image.description="Passwordless e-mail-code login with device-bound sessions, backed by Redis" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}"

# Owned by root and not writable by the user the service runs as.
COPY --chown=0:0 authsession /usr/local/bin/authsession

# The non-root user of the distroless base (and of the local stand-in).
USER 65532:65532
# Only the public listener (AUTHSESSION_PUBLIC_HTTP_ADDR): `docker run -P` publishes what is exposed on every interface, and the
# internal surface (8081) must stay behind a network boundary, published by hand if at all.
EXPOSE 8080
# The service drains both listeners and flushes telemetry on SIGTERM (the runbook's shutdown).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/authsession"]
