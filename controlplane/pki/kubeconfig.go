package pki

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ContextName is the cluster, user and context name in every kubeconfig
// Gatehouse writes.
const ContextName = "gatehouse"

// Kubeconfig builds a kubeconfig for server that authenticates with the
// client certificate ck, with every credential embedded so the file can be
// copied elsewhere.
func (b *Bundle) Kubeconfig(ck CertKey, server string) (*clientcmdapi.Config, error) {
	keyPEM, err := ck.KeyPEM()
	if err != nil {
		return nil, err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[ContextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: b.CA.PEM()}
	cfg.AuthInfos[ContextName] = &clientcmdapi.AuthInfo{ClientCertificateData: ck.PEM(), ClientKeyData: keyPEM}
	cfg.Contexts[ContextName] = &clientcmdapi.Context{Cluster: ContextName, AuthInfo: ContextName}
	cfg.CurrentContext = ContextName
	return cfg, nil
}

// WriteKubeconfig writes Kubeconfig(ck, server) to path, readable only by
// its owner since it holds a private key.
func (b *Bundle) WriteKubeconfig(path string, ck CertKey, server string) error {
	cfg, err := b.Kubeconfig(ck, server)
	if err != nil {
		return err
	}
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("encoding kubeconfig %s: %w", path, err)
	}
	return writeFile(path, data, 0o600)
}
