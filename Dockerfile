# The ocmt server image: FROM scratch around the static binary, so it builds
# on a machine with no registry. Build with `make image` (it runs `make
# static`, prepares .image/ and runs `docker build -t ocmt .`); README "Image"
# has the run line. The build context is only ./ocmt and .image/ (see
# .dockerignore).
FROM scratch
COPY ocmt /ocmt
# .image/ holds data/ (mode 0700) and tmp/ (mode 1777), both empty: scratch
# has no mkdir, so they come from the context, owned by the image's user.
COPY --chown=65532:65532 .image/ /
USER 65532:65532
ENV OCMT_LISTEN=127.0.0.1:8080 OCMT_DATA_DIR=/data
EXPOSE 8080
ENTRYPOINT ["/ocmt"]
CMD ["serve"]
