//! Test certificates for drivers' TLS tests.

use std::path::Path;

/// Writes a CA (`ca.pem`, `ca.key`) and a server certificate for 127.0.0.1 signed by it
/// (`server.pem`, `server.key`, PKCS#8) into `dir`, made with the machine's `openssl`
/// (`scripts/setup` installs it). EC P-256 keys, valid for a day.
pub fn test_certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &EC,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=tidewater test CA"],
        ]
        .concat(),
    );
    signed(dir, "server", "/CN=127.0.0.1", Some("ext.cnf"));
}

/// Writes a client certificate for `name` (`<name>.pem`, `<name>.key`, PKCS#8), signed
/// by the CA that [`test_certificates`] wrote into `dir`, for mutual TLS.
pub fn client_certificate(dir: &Path, name: &str) {
    // An extension makes it an X.509 v3 certificate: rustls takes no other version.
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    signed(dir, name, &format!("/CN={name}"), Some("client.cnf"));
}

/// What a mutual-TLS test needs, in `dir`: [`test_certificates`], a client certificate
/// `service-a` of that CA, and in `dir/stranger` another CA with a server certificate
/// and a client certificate `intruder` of its own, for a client the broker must refuse
/// (and a CA the client must not trust).
pub fn mutual_tls_certificates(dir: &Path) {
    test_certificates(dir);
    client_certificate(dir, "service-a");
    let stranger = dir.join("stranger");
    test_certificates(&stranger);
    client_certificate(&stranger, "intruder");
}

/// A new EC P-256 key, unencrypted.
const EC: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A key and a certificate for `subject`, signed by the CA in `dir`, valid for a day.
fn signed(dir: &Path, name: &str, subject: &str, extensions: Option<&str>) {
    let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
    openssl(dir, &[&["req"][..], &EC, &["-keyout", &key, "-out", &csr, "-subj", subject]].concat());
    let mut sign = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "1",
    ];
    if let Some(file) = extensions {
        sign.extend(["-extfile", file]);
    }
    openssl(dir, &sign);
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}
