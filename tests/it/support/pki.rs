//! A throw-away PKI for TLS tests: a CA, a server certificate for
//! `localhost`/`127.0.0.1`, client certificates and a CRL, written as PEM
//! files in a temporary directory.
//!
//! Client certificates have no Common Name: the proxy refuses one towards
//! members, as etcd does (the CN would be taken as an etcd user).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SerialNumber,
};

/// A certificate and key on disk.
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The test PKI.
pub struct Pki {
    dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The CA's private key (PEM), for certificates made with openssl.
    pub ca_key: PathBuf,
    /// Server certificate for `localhost` and `127.0.0.1`, with a Common Name.
    pub server: CertFiles,
    /// A client certificate without Common Name.
    pub client: CertFiles,
    next_serial: u8,
}

impl Pki {
    /// Generates the CA, a server and a client certificate.
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("pki dir");
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "etcd-grpc-proxy test CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let ca_key_path = dir.path().join("ca-key.pem");
        std::fs::write(&ca_key_path, ca_key.serialize_pem()).unwrap();
        let issuer = Issuer::new(params, ca_key);
        let mut pki = Pki {
            ca,
            ca_key: ca_key_path,
            issuer,
            server: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            client: CertFiles {
                cert: PathBuf::new(),
                key: PathBuf::new(),
            },
            next_serial: 10,
            dir,
        };
        pki.server = pki.issue("server", &["localhost", "127.0.0.1"]).0;
        pki.client = pki.issue_client("client").0;
        pki
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Issues a certificate (server and client use) with Common Name
    /// `name`, returning its files and serial number.
    pub fn issue(&mut self, name: &str, sans: &[&str]) -> (CertFiles, SerialNumber) {
        self.make(name, sans, true)
    }

    /// Issues a client certificate without Common Name (its files are named
    /// after `name`), as the proxy may present to members.
    pub fn issue_client(&mut self, name: &str) -> (CertFiles, SerialNumber) {
        self.make(name, &[], false)
    }

    fn make(&mut self, name: &str, sans: &[&str], cn: bool) -> (CertFiles, SerialNumber) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        // rcgen's default subject has a CN ("rcgen self signed cert").
        params.distinguished_name = DistinguishedName::new();
        if cn {
            params.distinguished_name.push(DnType::CommonName, name);
        } else {
            params
                .distinguished_name
                .push(DnType::OrganizationName, name);
        }
        let serial = SerialNumber::from_slice(&[self.next_serial]);
        self.next_serial += 1;
        params.serial_number = Some(serial.clone());
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = self.files(name);
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        (files, serial)
    }

    fn files(&self, name: &str) -> CertFiles {
        CertFiles {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        }
    }

    /// An X.509 v1 client certificate (no extensions, no Common Name)
    /// signed by the CA, as `openssl x509 -req` makes one.
    pub fn issue_v1_with_openssl(&self, name: &str) -> CertFiles {
        let files = self.files(name);
        let csr = self.dir.path().join(format!("{name}.csr"));
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let path = |p: &Path| p.display().to_string();
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &path(&files.key),
        ]);
        openssl(&[
            "req",
            "-new",
            "-key",
            &path(&files.key),
            "-subj",
            &format!("/O={name}"),
            "-out",
            &path(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            &path(&self.ca),
            "-CAkey",
            &path(&self.ca_key),
            "-set_serial",
            "7",
            "-days",
            "2",
            "-out",
            &path(&files.cert),
        ]);
        let text = openssl(&["x509", "-noout", "-text", "-in", &path(&files.cert)]);
        assert!(
            text.contains("Version: 1 (0x0)"),
            "not a v1 certificate:\n{text}"
        );
        files
    }

    /// Writes a CRL revoking `serials`, returning its path.
    pub fn crl(&self, serials: &[SerialNumber]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + time::Duration::days(1),
            crl_number: SerialNumber::from_slice(&[1]),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: s.clone(),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        let path = self.dir.path().join("crl.pem");
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }

    /// etcdctl's flags for the CA and a client certificate.
    pub fn etcdctl_flags(&self, client: &CertFiles) -> Vec<String> {
        vec![
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", client.cert.display()),
            format!("--key={}", client.key.display()),
        ]
    }
}
